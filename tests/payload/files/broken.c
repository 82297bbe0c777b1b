int main(void)
{
	return payload_undeclared_name;
}
